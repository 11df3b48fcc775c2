"""The service's endpoints by subject, each an `APIRouter` that `api.create_app` includes:
predictions, feedback, admin, and health, model and metrics. What they share (the served
model, the settings, the metrics, the prediction log, the admin check) comes from `deps.py` as
typed dependencies."""
