"""Level 2: an automated training pipeline (Prefect, Great Expectations, MLflow) and a service
that follows the registry's champion."""
