"""URLs of the API: ``path("api/", include("django_workflows.api.urls"))``.

The OpenAPI schema is the project's (drf-spectacular's ``SpectacularAPIView``).
"""

from rest_framework.routers import DefaultRouter

from .views import DefinitionViewSet, TaskRunViewSet, WorkflowViewSet

router = DefaultRouter()
router.include_format_suffixes = False  # JSON only; and definition names may hold dots
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("task-runs", TaskRunViewSet, basename="taskrun")
router.register("definitions", DefinitionViewSet, basename="definition")

app_name = "django_workflows_api"
urlpatterns = router.urls
