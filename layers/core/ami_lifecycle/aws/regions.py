"""The real region list, from botocore's bundled endpoint data (offline, once per container).

Region names are validated against it wherever a user names one: `P:replicate-to`,
`ReplicaRegions`, `SweepRegions`, payload `regions`. A name that merely looks like a region
(`us-east-9`) is refused before any copy is queued or any region is swept.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=16)
def service_regions(service: str) -> frozenset[str]:
    """Every region botocore lists for a service, in every partition."""
    import boto3

    session = boto3.session.Session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions(service, partition_name=partition)
    )


def known_regions() -> frozenset[str]:
    """Every EC2 region botocore knows, all partitions."""
    return service_regions("ec2")
