"""The shape check shared by ``preflight_train.py``'s hook and its main: a sibling module, so the
launcher must put the script's folder on ``sys.path`` the way python does."""


def check(experts: int, top_k: int, world: int) -> None:
    if experts % world:
        raise ValueError(
            f"{experts} routed experts cannot be split over {world} expert-parallel ranks "
            f"({experts} is not divisible by {world})"
        )
    if top_k > experts:
        raise ValueError(f"top-k {top_k} is above the {experts} routed experts")
