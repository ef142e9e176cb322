"""The scaling settings section (`[scaling]`): resources besides the local pool, the saga's timings, AWS."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from autarky.core.durations import Duration
from autarky.core.settings_section import SecretSetting, Section, SettingsSection
from autarky.scaling.policy_types import ScalingPolicy


class AwsSettings(SettingsSection):
    """Where the AWS providers reach AWS. Credentials: these keys when set, else boto3's own chain
    (environment, shared profile, instance role)."""

    region: str = "us-east-1"
    endpoint_url: str | None = None  # e.g. a LocalStack or moto server
    profile: str | None = None
    access_key_id: SecretSetting | None = None
    secret_access_key: SecretSetting | None = None
    # Plain EC2 instances Autarky runs itself (`aws-ec2/<group>` resources) are launched like this.
    ec2_image_id: str | None = None
    ec2_instance_type: str = "t3.micro"
    ec2_subnet_id: str | None = None
    request_timeout: Duration = Field(timedelta(seconds=30), gt=timedelta(0))


class ScalableResource(SettingsSection):
    """A resource the scalers manage besides the local pool, e.g. `aws-asg/web` with its own bounds."""

    resource: str = Field(pattern=r"^(aws-asg|aws-ecs|aws-ec2)/[A-Za-z0-9._:@/-]+$")
    policy: Section[ScalingPolicy] = Field(default_factory=ScalingPolicy)


class ScalingSettings(SettingsSection):
    """Resources the scalers manage besides the local pool, and how the scaling saga runs (`[scaling]`)."""

    resources: list[ScalableResource] = Field(default_factory=list)
    # The saga waits this long for a new capacity to be healthy before it compensates.
    health_timeout: Duration = Field(timedelta(minutes=5), gt=timedelta(0))
    health_poll_interval: Duration = Field(timedelta(seconds=10), gt=timedelta(0))
    # How often a scaler compares its resource with the desired capacity (replaces killed members).
    reconcile_interval: Duration = Field(timedelta(minutes=1), gt=timedelta(0))
    approval_timeout: Duration = Field(timedelta(hours=1), gt=timedelta(0))
    aws: AwsSettings = Field(default_factory=AwsSettings)
