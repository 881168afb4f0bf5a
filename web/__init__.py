"""Small web pieces shared by the apps that belong to no product area (login throttling, the API's plumbing).

config, annotation and reward_models import from here; nothing here imports annotation or reward_models.
"""
