"""nucgen-tf: coarse-to-fine generation of annotated 2D/3D nucleus images (TensorFlow / Keras 3)."""

from setuptools import find_packages, setup

setup(
    name="nucgen-tf",
    version="0.1.0",
    description="Three-stage GAN generator of realistic, fully annotated 2D and 3D nucleus images.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["nucgen_tf", "nucgen_tf.*"]),
    include_package_data=True,
    package_data={"nucgen_tf": ["pretrained/**/*", "configs/**/*.flags"]},
    install_requires=[
        "keras>=3.10",
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-image>=0.22",
        "networkx>=3.0",
        "tifffile>=2023.1",
        "absl-py>=1.4",
        "tensorboard>=2.16",
        "tqdm>=4.60",
    ],
    extras_require={
        # TensorFlow comes from an extra so that GPU users do not get a second, CPU-only copy.
        "cpu": ["tensorflow-cpu>=2.16,<2.22"],
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.22"],
        # StarDist: the second segmenter family of the experiments (nucgen_tf.segment.stardist).
        "stardist": ["stardist==0.9.2"],
        "test": ["pytest>=7", "ruff>=0.4", "stardist==0.9.2"],
    },
    entry_points={"console_scripts": ["nucgen=nucgen_tf.commands.nucgen:main"]},
)
