"""The shipped problem definitions, installed as ``invfem.problems``: one module per problem,
each with ``make_problem(seed=0, **options) -> Problem``."""
