-- The second database on the compose file's PostgreSQL (the first, prefect, is POSTGRES_DB): MLflow's store.
CREATE DATABASE mlflow;
