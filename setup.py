"""MovieLens recommender: a TFX pipeline from raw ratings to a ScaNN model on TF Serving.

Requirements here are loose; requirements.lock pins the whole tested stack (make install).
"""
from setuptools import find_packages, setup

setup(
    name='movielens-recommender',
    version='0.1.0',
    description='End-to-end TFX pipeline: MovieLens -> TFRS retrieval -> ScaNN -> TF Serving',
    python_requires='>=3.9,<3.11',
    packages=find_packages(include=['pipeline', 'pipeline.*', 'components', 'components.*',
                                    'serving', 'serving.*', 'kubeflow', 'kubeflow.*']),
    package_data={'components': ['schema/*.pbtxt']},
    install_requires=[
        'tfx>=1.16,<1.17',
        'tensorflow>=2.16,<2.17',
        'tensorflow-transform>=1.16,<1.17',
        'tensorflow-model-analysis>=0.47,<0.48',
        'tensorflow-recommenders>=0.7.3,<0.8',
        'scann>=1.3.2,<1.4',
        'tf-keras>=2.16,<2.17',
        'apache-beam[gcp]>=2.59,<2.60',
        'tensorflow-serving-api>=2.16,<2.17',
        'kfp>=2',
        'kfp-pipeline-spec>=0.2.2',
    ],
)
