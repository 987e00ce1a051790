"""Routes under `/api/`."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from . import asyncapi, auth, errors, explorers, health, jobs, logs, rooms

urlpatterns = [
    path("auth/csrf/", auth.CsrfView.as_view(), name="auth-csrf"),
    path("auth/login/", auth.LoginView.as_view(), name="auth-login"),
    path("auth/token/", auth.TokenView.as_view(), name="auth-token"),
    path("auth/me/", auth.MeView.as_view(), name="auth-me"),
    path("auth/logout/", auth.LogoutView.as_view(), name="auth-logout"),
    path("rooms/", rooms.RoomListView.as_view(), name="rooms"),
    path("rooms/<str:slug>/", rooms.RoomDetailView.as_view(), name="room"),
    path("rooms/<str:slug>/messages/", rooms.RoomMessagesView.as_view(), name="room-messages"),
    path(
        "rooms/<str:slug>/messages/<int:message_id>/",
        rooms.RoomMessageView.as_view(),
        name="room-message",
    ),
    path("rooms/<str:slug>/members/", rooms.RoomMembersView.as_view(), name="room-members"),
    path(
        "rooms/<str:slug>/members/<int:user_id>/",
        rooms.RoomMemberView.as_view(),
        name="room-member",
    ),
    path("rooms/<str:slug>/join/", rooms.RoomJoinView.as_view(), name="room-join"),
    path("rooms/<str:slug>/read/", rooms.RoomReadView.as_view(), name="room-read"),
    path("rooms/<str:slug>/readers/", rooms.RoomReadersView.as_view(), name="room-readers"),
    path("direct-rooms/", rooms.DirectRoomsView.as_view(), name="direct-rooms"),
    path("job-kinds/", jobs.JobKindListView.as_view(), name="job-kinds"),
    path("jobs/", jobs.JobListView.as_view(), name="jobs"),
    path("jobs/<str:job_id>/", jobs.JobDetailView.as_view(), name="job"),
    path("jobs/<str:job_id>/cancel/", jobs.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<str:job_id>/retry/", jobs.JobRetryView.as_view(), name="job-retry"),
    path("jobs/<str:job_id>/attempts/", jobs.JobAttemptsView.as_view(), name="job-attempts"),
    path("jobs/<str:job_id>/log/", jobs.JobLogView.as_view(), name="job-log"),
    path("jobs/<str:job_id>/output/", jobs.JobOutputView.as_view(), name="job-output"),
    path("jobs/<str:job_id>/shares/", jobs.JobSharesView.as_view(), name="job-shares"),
    path(
        "jobs/<str:job_id>/shares/<int:share_id>/",
        jobs.JobShareView.as_view(),
        name="job-share",
    ),
    path("jobs/<str:job_id>/download/", jobs.JobDownloadView.as_view(), name="job-download"),
    path("logs/", logs.LogFileListView.as_view(), name="logs"),
    path("health/", health.LivenessView.as_view(), name="health-live"),
    path("health/ready/", health.ReadinessView.as_view(), name="health-ready"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/asyncapi/", asyncapi.AsyncApiView.as_view(), name="schema-asyncapi"),
    path("docs/", explorers.SwaggerView.as_view(url_name="schema"), name="docs"),
    path("redoc/", explorers.RedocView.as_view(url_name="schema"), name="redoc"),
    # Last: whatever no route above takes answers the one error shape, never an HTML page.
    re_path(r"", errors.unknown_endpoint, name="unknown-endpoint"),
]
