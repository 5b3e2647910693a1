"""Streamlit review app: read a run's audit record and sign it off."""
