"""The decode engine: a plan built once per decoder (plan.py), a state per generation (state.py), the step as
named verbs over both (step.py), a session that runs it (session.py), eagerly or as a CUDA graph (graphs.py)."""
from .plan import StepPlan, build_plan
from .session import DecodeSession, HawkOutput
from .state import DecodeState, new_state

__all__ = ["DecodeSession", "DecodeState", "HawkOutput", "StepPlan", "build_plan", "new_state"]
