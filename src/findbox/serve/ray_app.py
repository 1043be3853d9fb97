"""The Ray Serve application with findbox's defaults (the bundled demo models), for Ray's tooling:

    serve run findbox.serve.ray_app:app
    serve build findbox.serve.ray_app:app -o deploy/ray/findbox_serve.yaml   # then edit replicas, resources

With options, use the builder instead: `serve run findbox.serve.ray:app_builder scorer_replicas=2`.
"""

from findbox.serve.ray import app_builder

app = app_builder()
