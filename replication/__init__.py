"""Replication of 'Medical Multimodal Classifiers Under Low Data Situations' (Aydin, Zhang, Haffari, 2019).

Importing the package has no side effects: no TensorFlow import, no file access.
"""

__version__ = "0.1.0"
