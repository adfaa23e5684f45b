"""Print the path of the payments sample capture shipped with the package (for shell use)."""

from importlib import resources


def sample_capture_path() -> str:
    """Filesystem path of ``payments-sample.jsonl``."""
    return str(resources.files("hubblepy.sample").joinpath("payments-sample.jsonl"))


if __name__ == "__main__":
    print(sample_capture_path())
