"""The studies admin: the list with its filters, a study's page with its folds and a link to
its trials, the read-only trials list, and cancel through the service."""

from __future__ import annotations

import pytest
from django.test import Client

from studies import services
from studies.models import Study, StudyTrial
from tests.studies.conftest import submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_browser(transactional_db):  # type: ignore[no-untyped-def]
    from tests.factories import UserFactory

    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_staff_see_studies_their_folds_and_their_trials(
    admin_browser, queue, study_strategy
) -> None:
    study = queue.run(submit(study_strategy, n_trials=3))
    listing = admin_browser.get("/admin/studies/study/", {"status__exact": "succeeded"})
    assert listing.status_code == 200 and f">{study.pk}<" in listing.content.decode()
    page = admin_browser.get(f"/admin/studies/study/{study.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Whole period" in html and f"study__id__exact={study.pk}" in html
    trials = admin_browser.get("/admin/studies/studytrial/", {"study__id__exact": study.pk})
    assert trials.status_code == 200
    assert trials.content.decode().count("Complete") >= 3
    trial = StudyTrial.objects.filter(study=study).first()
    assert admin_browser.post(f"/admin/studies/studytrial/{trial.pk}/delete/").status_code == 403


def test_the_cancel_action_cancels_unfinished_studies(admin_browser, queue, study_strategy) -> None:
    running = submit(study_strategy, n_trials=6)
    services.study_launch(study_id=running.pk, task_id=running.celery_task_id)
    response = admin_browser.post(
        "/admin/studies/study/",
        {"action": "cancel_studies", "_selected_action": [running.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert Study.objects.get(pk=running.pk).status == "cancelled"
