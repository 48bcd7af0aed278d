"""The scikit-learn census trainer as an installable package (``--package-path`` style).

No install requirements: the runtime provides scikit-learn, pandas, numpy and joblib. They
are listed as the ``runtime`` extra for a bare environment.
"""

from setuptools import find_packages, setup

setup(
    name="census-sklearn-trainer",
    version="0.1.0",
    description="Census income gradient-boosting trainer for mlengine (scikit-learn)",
    packages=find_packages(include=["trainer", "trainer.*"]),
    python_requires=">=3.10",
    install_requires=[],
    extras_require={"runtime": ["scikit-learn>=1.3", "pandas", "numpy>=2", "joblib"]},
)
