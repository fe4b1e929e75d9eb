"""Installs the avid daemon (package ``daemon``) and its ``avid`` console script."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="avid",
    version="0.1.0",
    description="Audio-visual identity daemon that opens a door: face + voice, on-device TFLite",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["daemon", "daemon.*"]),
    package_data={"daemon": ["demo_data/*.md", "demo_data/*/*", "web/static/*"]},
    # The models are installed beside the interpreter's prefix (daemon/inference/tflite.py looks there
    # when it is not running from a source checkout).
    data_files=[("share/avid/models", sorted(str(p) for p in Path("models").iterdir() if p.is_file()))],
    install_requires=[
        "ai-edge-litert>=1.2",
        "numpy>=1.26",
        "opencv-python-headless>=4.8",
        "webrtcvad-wheels>=2.0.14",
        "sounddevice>=0.4.6",
        "pyyaml>=6.0",
        "pydantic>=2.6",
        "gpiozero>=2.0",
        "cryptography>=42",
        "paho-mqtt>=2.0,<3",
        'lgpio>=0.2; platform_machine == "aarch64" and sys_platform == "linux"',
    ],
    extras_require={
        # luma.oled in the tests too: the display prompt device is tested on luma.core's dummy device;
        # the web page's stack too, which its browser tests run.
        "test": ["pytest>=8", "hypothesis>=6.100", "trustme>=1.1", "luma.oled>=3.13", "selenium>=4.15",
                 "starlette>=1.10", "uvicorn>=0.29", "python-multipart>=0.0.9"],
        "display": ["luma.oled>=3.13"],
        # `avid web`: a small ASGI stack (sessions are kept in memory, passwords hashed with scrypt).
        "web": ["starlette>=1.10", "uvicorn>=0.29", "python-multipart>=0.0.9"],
        "tools": ["matplotlib>=3.8", "tqdm>=4.66", "psutil>=5.9"],
    },
    entry_points={"console_scripts": ["avid = daemon.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX :: Linux",
        "License :: OSI Approved :: Apache Software License",
    ],
)
