"""The model registry: models, versions with lineage, the lifecycle state machine, deployments and aliases."""
