"""Florence-2 task tokens and how prompts that use them are checked."""

from f2tune.tasks.tokens import TASKS_WITH_INPUT, TASKS_WITHOUT_INPUT, check_prompt

__all__ = ["TASKS_WITH_INPUT", "TASKS_WITHOUT_INPUT", "check_prompt"]
