"""Small web pieces shared by the apps that belong to no product area: login throttling (login_throttle),
the errors services raise (errors) and the REST API's plumbing (api).

config, annotation and reward_models import from here; nothing here imports annotation or reward_models
(tests/test_boundaries.py).
"""
