"""Where finished books go (spec.exports): a folder of this process (a volume in a pod, a folder on
this machine) or an S3-compatible bucket. `target.py` reads the choice from the environment,
`deliver.py` puts a written file there and says where it is (with its size and sha256), `s3.py` is
the bucket's client, and `fetch.py` reads a finished book back for `bookgen files|fetch`.
"""
