"""The stack's two Lambda functions and the pure modules they share.

``save_delete`` indexes images on S3 events; ``retrieve`` serves the index behind the HTTP
API. Both are deployed from a zip of this package (handlers ``lambdas.save_delete.handler``
and ``lambdas.retrieve.handler``), so everything here imports only the standard library,
boto3 (present in the Lambda runtime) and Pillow (vendored into the zip). Handlers are thin
shells; the work happens in plain functions that take their clients as arguments.
"""
