"""AWS resource ids, recognised in one place."""

from __future__ import annotations

import re

# An AMI id: `ami-` and 8 or 17 hexadecimal digits (the whole string).
IMAGE_ID = re.compile(r"^ami-[0-9a-f]{8,17}\Z", re.ASCII)
# AMI ids inside a text (a snapshot's Description: "Created by CreateImage(i-...) for ami-... ").
_IMAGE_ID_IN_TEXT = re.compile(r"\bami-[0-9a-f]{8,17}\b", re.ASCII)


def is_image_id(value: object) -> bool:
    return isinstance(value, str) and bool(IMAGE_ID.match(value))


def image_ids_in(text: str) -> set[str]:
    return set(_IMAGE_ID_IN_TEXT.findall(text))


# An AWS account id: 12 decimal digits.
ACCOUNT_ID = re.compile(r"^[0-9]{12}\Z", re.ASCII)
# An IAM role name (the path is not part of it): 1-64 of these characters.
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}\Z", re.ASCII)


def is_account_id(value: object) -> bool:
    return isinstance(value, str) and bool(ACCOUNT_ID.match(value))


def is_role_name(value: object) -> bool:
    return isinstance(value, str) and bool(ROLE_NAME.match(value))
