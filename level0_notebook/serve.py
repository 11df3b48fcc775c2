"""Level 0 server: the notebook's pickle behind one endpoint. Deliberately naive: no validation,
no health check, no version; a bad request is whatever error pandas raises (a 500)."""

import os
import pickle

import pandas as pd
import uvicorn
from fastapi import FastAPI

MODEL_PATH = os.environ.get("LEVEL0_MODEL_PATH", "state/level0/model.pkl")
with open(MODEL_PATH, "rb") as f:
    model = pickle.load(f)  # runs any code in the file: trust it or don't load it

app = FastAPI()


@app.post("/predict")
def predict(payload: dict):
    row = model.predict_proba(pd.DataFrame([payload]))[0]
    probabilities = dict(zip(model.classes_, row, strict=True))
    return {"species": max(probabilities, key=probabilities.get), "probabilities": probabilities}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("LEVEL0_PORT", "8000")))
