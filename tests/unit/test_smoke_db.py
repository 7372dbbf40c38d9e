import pytest
from django.conf import settings


@pytest.mark.django_db
def test_suite_runs_against_postgresql():
    assert settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
