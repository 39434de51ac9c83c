"""Save the render's model.joblib as an MLflow model directory (run with bench/.venv's python).

python mlflow_model.py SRC/model.joblib DEST_DIR
"""

import shutil
import sys

import joblib
import mlflow.sklearn
import numpy as np
from mlflow.models import infer_signature

source, destination = sys.argv[1], sys.argv[2]
estimator = joblib.load(source)
row = np.array([[5.1, 3.5, 1.4, 0.2]])
shutil.rmtree(destination, ignore_errors=True)
# The signature (float64 tensor of 4 columns) is what MLflow recommends logging; it
# also lets /invocations take {"instances": [[...]]} as a plain array. Pickle, as the
# joblib artifact is: skops (MLflow's default where installed) refuses tree internals.
mlflow.sklearn.save_model(
    estimator,
    destination,
    serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
    signature=infer_signature(row, estimator.predict(row)),
)
