"""The handler for the HTTP API in front of the retrieve function (API Gateway v2): one of
the compute kinds ``infra.compute_handlers`` puts together.

* **"Already exists"**: HTTP APIs have no unique names, so ``create`` first looks for ours
  and converges it (``infra.aws_support.converge``) rather than making a second API.
* **Stages without UpdateStage**: moto 5.2.5 (the local cloud) implements no
  ``UpdateStage``. Bootstrap calls it as on AWS, and replaces the stage instead only when
  the endpoint shows that it lacks the operation: moto in process raises
  ``NotImplementedError``, and a moto server answers HTTP 500 with no AWS error code. A
  500 from an AWS host is AWS failing, never a reason to delete the live stage, so it is
  raised like any other error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from imgcli.infra.aws_support import (
    RUN_AGAIN,
    converge,
    is_error,
    own_tags,
    paginated,
    settings_of,
    stale_own_tag_keys,
    unknown_setting,
)
from imgcli.infra.errors import InfraError
from imgcli.infra.handlers import Observed
from imgcli.infra.names import TAG_KEY
from imgcli.infra.resources import API_ID, API_STAGE, API_URL, Resource

#: Hosts of AWS's own endpoints (``*.amazonaws.com``, and ``*.amazonaws.com.cn`` in China).
_AWS_HOST_SUFFIXES: Final = (".amazonaws.com", ".amazonaws.com.cn")


class HttpApiHandler:
    """An API Gateway HTTP API: routes, one Lambda proxy integration, one stage, tags.

    HTTP API names are not unique, so the stack's API is the one with its name that
    carries the ``imgcli:stack`` tag (the name already embeds the stack name, so the tag
    tells ours from a same-named API someone made by hand). Should there be several (made
    outside bootstrap, which converges an existing one instead of creating another),
    ``read`` and ``update`` use the first ``GetApis`` lists, and ``delete`` removes them all.
    """

    def __init__(self, apis: Any) -> None:
        self._apis = apis

    def read(self, name: str) -> Observed | None:
        api = next(self._our_apis(name), None)
        if api is None:
            return None
        api_id = api["ApiId"]
        routes = self._routes(api_id)
        integration = self._routed_integration(api_id, routes)
        settings = {
            "routes": {
                route["RouteKey"]: route.get("AuthorizationType", "NONE") for route in routes
            },
            "integration": None if integration is None else _integration_settings(integration),
            "stage": self._stage_settings(api_id),
            "tags": own_tags(api.get("Tags") or {}),
        }
        return Observed(settings, _api_outputs(api))

    def create(self, resource: Resource, refs: Mapping[str, str]) -> Mapping[str, str]:
        if next(self._our_apis(resource.name), None) is not None:
            return converge(self, resource, refs)
        wanted = settings_of(resource, refs)
        api = self._apis.create_api(
            Name=resource.name, ProtocolType="HTTP", Tags=dict(wanted["tags"])
        )
        api_id = api["ApiId"]
        integration_id = self._create_integration(api_id, wanted["integration"])
        for route_key, authorization in wanted["routes"].items():
            self._create_route(api_id, route_key, authorization, integration_id)
        self._create_stage(api_id, wanted["stage"])
        return _api_outputs(api)

    def update(self, resource: Resource, setting: str, refs: Mapping[str, str]) -> None:
        api = next(self._our_apis(resource.name), None)
        if api is None:
            raise InfraError(f"{resource.label} has disappeared", hint=RUN_AGAIN)
        wanted = settings_of(resource, refs)[setting]
        if setting == "routes":
            self._sync_routes(api["ApiId"], wanted)
        elif setting == "integration":
            self._sync_integration(api["ApiId"], wanted)
        elif setting == "stage":
            self._sync_stage(api["ApiId"], wanted)
        elif setting == "tags":
            self._retag(api, wanted)
        else:
            raise unknown_setting(resource, setting)

    def delete(self, name: str, *, delete_images: bool) -> None:
        for api in list(self._our_apis(name)):
            try:
                self._apis.delete_api(ApiId=api["ApiId"])
            except ClientError as error:
                if not is_error(error, ("NotFoundException",)):
                    raise

    def _our_apis(self, name: str) -> Iterator[dict[str, Any]]:
        for api in paginated(self._apis, "get_apis", "Items"):
            if api.get("Name") == name and TAG_KEY in (api.get("Tags") or {}):
                yield api

    def _routes(self, api_id: str) -> list[dict[str, Any]]:
        return sorted(
            paginated(self._apis, "get_routes", "Items", ApiId=api_id),
            key=lambda route: str(route["RouteKey"]),
        )

    def _routed_integration(
        self, api_id: str, routes: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The integration the routes send requests to (else the API's first one)."""
        integrations: dict[str, dict[str, Any]] = {
            integration["IntegrationId"]: integration
            for integration in paginated(self._apis, "get_integrations", "Items", ApiId=api_id)
        }
        for route in routes:
            target = str(route.get("Target", "")).removeprefix("integrations/")
            if target in integrations:
                return integrations[target]
        return next(iter(integrations.values()), None)

    def _stages(self, api_id: str) -> dict[str, dict[str, Any]]:
        return {
            stage["StageName"]: stage
            for stage in paginated(self._apis, "get_stages", "Items", ApiId=api_id)
        }

    def _stage_settings(self, api_id: str) -> dict[str, Any] | None:
        """The ``$default`` stage (the one bootstrap makes), else the first one there is."""
        stages = self._stages(api_id)
        stage = stages.get(API_STAGE) or next(iter(stages.values()), None)
        if stage is None:
            return None
        limits = stage.get("DefaultRouteSettings") or {}
        return {
            "name": stage["StageName"],
            "auto_deploy": bool(stage.get("AutoDeploy", False)),
            "burst_limit": limits.get("ThrottlingBurstLimit"),
            "rate_limit": limits.get("ThrottlingRateLimit"),
        }

    def _create_integration(self, api_id: str, wanted: Mapping[str, Any]) -> str:
        integration = self._apis.create_integration(
            ApiId=api_id,
            IntegrationType=wanted["type"],
            IntegrationUri=wanted["uri"],
            PayloadFormatVersion=wanted["payload_format_version"],
        )
        return str(integration["IntegrationId"])

    def _create_route(
        self, api_id: str, route_key: str, authorization: str, integration_id: str | None
    ) -> None:
        arguments = {"ApiId": api_id, "RouteKey": route_key, "AuthorizationType": authorization}
        if integration_id is not None:
            arguments["Target"] = f"integrations/{integration_id}"
        self._apis.create_route(**arguments)

    def _create_stage(self, api_id: str, wanted: Mapping[str, Any]) -> None:
        self._apis.create_stage(ApiId=api_id, StageName=wanted["name"], **_stage_arguments(wanted))

    def _sync_routes(self, api_id: str, wanted: Mapping[str, str]) -> None:
        """Creates missing routes, fixes their authorization, deletes routes not wanted.

        New routes target the API's integration; if a half-finished create left none,
        they get no target until the ``integration`` update points every route at it.
        """
        routes = self._routes(api_id)
        integration = self._routed_integration(api_id, routes)
        integration_id = None if integration is None else str(integration["IntegrationId"])
        live = {route["RouteKey"]: route for route in routes}
        for route_key, authorization in wanted.items():
            route = live.get(route_key)
            if route is None:
                self._create_route(api_id, route_key, authorization, integration_id)
            elif route.get("AuthorizationType", "NONE") != authorization:
                self._apis.update_route(
                    ApiId=api_id, RouteId=route["RouteId"], AuthorizationType=authorization
                )
        for route_key, route in live.items():
            if route_key not in wanted:
                self._apis.delete_route(ApiId=api_id, RouteId=route["RouteId"])

    def _sync_integration(self, api_id: str, wanted: Mapping[str, Any]) -> None:
        """Updates (or, after a half-finished create, makes) the integration, then points
        every route at it."""
        routes = self._routes(api_id)
        integration = self._routed_integration(api_id, routes)
        if integration is None:
            integration_id = self._create_integration(api_id, wanted)
        else:
            integration_id = str(integration["IntegrationId"])
            self._apis.update_integration(
                ApiId=api_id,
                IntegrationId=integration_id,
                IntegrationType=wanted["type"],
                IntegrationUri=wanted["uri"],
                PayloadFormatVersion=wanted["payload_format_version"],
            )
        target = f"integrations/{integration_id}"
        for route in routes:
            if route.get("Target") != target:
                self._apis.update_route(ApiId=api_id, RouteId=route["RouteId"], Target=target)

    def _sync_stage(self, api_id: str, wanted: Mapping[str, Any]) -> None:
        """Brings the wanted stage to its settings and removes any other stage, so ``read``
        can only ever find the one bootstrap manages."""
        stages = self._stages(api_id)
        if wanted["name"] in stages:
            self._update_stage(api_id, wanted)
        else:
            self._create_stage(api_id, wanted)
        for stage_name in stages:
            if stage_name != wanted["name"]:
                self._apis.delete_stage(ApiId=api_id, StageName=stage_name)

    def _update_stage(self, api_id: str, wanted: Mapping[str, Any]) -> None:
        try:
            self._apis.update_stage(
                ApiId=api_id, StageName=wanted["name"], **_stage_arguments(wanted)
            )
        except (NotImplementedError, ClientError) as error:
            if not _lacks_operation(error, endpoint_url=self._apis.meta.endpoint_url):
                raise
            # Replacing the stage briefly takes the API offline: acceptable only where
            # the endpoint offers nothing better (moto, the local cloud).
            self._apis.delete_stage(ApiId=api_id, StageName=wanted["name"])
            self._create_stage(api_id, wanted)

    def _retag(self, api: Mapping[str, Any], wanted: Mapping[str, str]) -> None:
        arn = self._api_arn(api["ApiId"])
        if wanted:
            self._apis.tag_resource(ResourceArn=arn, Tags=dict(wanted))
        stale = stale_own_tag_keys(api.get("Tags") or {}, wanted)
        if stale:
            self._apis.untag_resource(ResourceArn=arn, TagKeys=stale)

    def _api_arn(self, api_id: str) -> str:
        meta = self._apis.meta
        return f"arn:{meta.partition}:apigateway:{meta.region_name}::/apis/{api_id}"


def _api_outputs(api: Mapping[str, Any]) -> dict[str, str]:
    return {API_ID: str(api["ApiId"]), API_URL: str(api["ApiEndpoint"])}


def _integration_settings(integration: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": integration.get("IntegrationType"),
        "uri": integration.get("IntegrationUri"),
        "payload_format_version": integration.get("PayloadFormatVersion"),
    }


def _stage_arguments(wanted: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "AutoDeploy": wanted["auto_deploy"],
        "DefaultRouteSettings": {
            "ThrottlingBurstLimit": wanted["burst_limit"],
            "ThrottlingRateLimit": wanted["rate_limit"],
        },
    }


def _lacks_operation(error: Exception, *, endpoint_url: str | None) -> bool:
    """Whether the endpoint does not implement the call (moto), rather than refusing it.

    moto in process raises ``NotImplementedError``. A moto server answers HTTP 500 with no
    AWS error code, which botocore reports as code "500"; from AWS itself that is an
    outage, so it counts only from an endpoint that is not an AWS host.
    """
    if isinstance(error, NotImplementedError):
        return True
    if not isinstance(error, ClientError) or not is_error(error, ("500",)):
        return False
    host = urlsplit(endpoint_url or "").hostname
    return host is not None and not host.endswith(_AWS_HOST_SUFFIXES)
