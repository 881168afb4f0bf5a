from __future__ import annotations

from django.apps import AppConfig


class RewardModelsConfig(AppConfig):
    name = "reward_models"
    verbose_name = "Reward models"

    def ready(self) -> None:
        # The agreement dashboard (annotation) shows the project's reward model through this summary.
        from annotation.pages.dashboard import reward_model_summary_register, selection_summary_register

        from .admin_views import project_reward_model, project_selection

        reward_model_summary_register(project_reward_model)
        # And its arms under uncertainty selection: the active model's accuracy on each, its priorities.
        selection_summary_register(project_selection)
