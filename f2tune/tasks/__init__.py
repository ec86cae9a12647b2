"""Florence-2 tasks: their tokens, the prompt checks, and the one table of prompt, target, parser,
metric and decoding settings per task."""

from f2tune.tasks.table import CUSTOM, TASKS, TaskSpec, build_prompt, format_target, parse_output, task_of
from f2tune.tasks.tokens import TASKS_WITH_INPUT, TASKS_WITHOUT_INPUT, check_prompt

__all__ = [
    "CUSTOM",
    "TASKS",
    "TASKS_WITH_INPUT",
    "TASKS_WITHOUT_INPUT",
    "TaskSpec",
    "build_prompt",
    "check_prompt",
    "format_target",
    "parse_output",
    "task_of",
]
