"""The upload engine: the resumable-upload protocol and the upload job, in plain Python with no Airflow import.

The hook is its transport (connection, auth, retries, API calls); the operators, sensors and triggers around it
are Airflow's face of it.
"""
