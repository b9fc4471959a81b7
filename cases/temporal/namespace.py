"""The namespace: the core case search attributes and retention (setup), and the registry of
the attributes admins add (cases/admin.py)."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
    RemoveSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from cases.temporal.client import get_client, mapped, rpc_timeout, unavailable
from cases.temporal.types import AttributeRegistrationError, NamespaceAttributes, SetupReport
from workers.model import SEARCH_ATTRIBUTE_TYPES
from workers.search_attributes import CORE_KEYS


async def setup_namespace(retention_days: int) -> SetupReport:
    """Register the core case search attributes and set retention. Safe to run repeatedly:
    each step reads what is there first. A booting cluster's errors come out as
    TemporalUnavailable (worth retrying), its refusals as TemporalRefused."""
    client = await get_client()
    try:
        return await _setup(client, retention_days)
    except RPCError as err:
        raise mapped(err) from err


async def _setup(client: Client, retention_days: int) -> SetupReport:
    report = SetupReport(retention_days=retention_days)
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace), timeout=rpc_timeout(10)
    )
    wanted: dict[str, IndexedValueType.ValueType] = {}
    for key in CORE_KEYS:
        if key.name in existing.custom_attributes:
            report.present.append(key.name)
        else:
            wanted[key.name] = IndexedValueType.ValueType(int(key.indexed_value_type))
    if wanted:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=wanted),
            timeout=rpc_timeout(30),
        )
        report.added.extend(wanted)
    desc = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace), timeout=rpc_timeout(10)
    )
    current = desc.config.workflow_execution_retention_ttl.seconds
    if current != retention_days * 86400:
        await client.workflow_service.update_namespace(
            UpdateNamespaceRequest(
                namespace=client.namespace,
                config=NamespaceConfig(
                    workflow_execution_retention_ttl=Duration(seconds=retention_days * 86400)
                ),
            ),
            timeout=rpc_timeout(10),
        )
    return report


# --- the search-attribute registry ------------------------------------------------------------

def _server_type(name: str) -> IndexedValueType.ValueType:
    snake = "".join(f"_{c}" if c.isupper() else c for c in name).lstrip("_").upper()
    return IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{snake}")  # "KeywordList" -> KEYWORD_LIST


# Made from the one list of attribute types: a type added there is registrable here, or this
# fails at import.
ATTRIBUTE_TYPES: dict[str, IndexedValueType.ValueType] = {
    name: _server_type(name) for name in SEARCH_ATTRIBUTE_TYPES}
_TYPE_NAMES = {v: k for k, v in ATTRIBUTE_TYPES.items()}


async def namespace_attributes() -> NamespaceAttributes:
    """The namespace's search attributes, as Temporal reports them."""
    client = await get_client()
    try:
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace), timeout=rpc_timeout(5)
        )
    except RPCError as err:
        raise unavailable(err) from err
    return NamespaceAttributes(
        custom={k: _TYPE_NAMES.get(v, str(v)) for k, v in resp.custom_attributes.items()},
        system={k: _TYPE_NAMES.get(v, str(v)) for k, v in resp.system_attributes.items()},
    )


async def register_attributes(attributes: dict[str, str]) -> None:
    """AddSearchAttributes for {name: type name}; Temporal's refusals become readable text."""
    client = await get_client()
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={n: ATTRIBUTE_TYPES[t] for n, t in attributes.items()},
            ),
            timeout=rpc_timeout(30),
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.ALREADY_EXISTS,
                          RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.PERMISSION_DENIED):
            raise AttributeRegistrationError(f"Temporal refused: {err.message}") from err
        raise unavailable(err) from err


async def remove_attributes(names: list[str]) -> None:
    client = await get_client()
    try:
        await client.operator_service.remove_search_attributes(
            RemoveSearchAttributesRequest(namespace=client.namespace, search_attributes=names),
            timeout=rpc_timeout(30),
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.NOT_FOUND,
                          RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.PERMISSION_DENIED):
            raise AttributeRegistrationError(f"Temporal refused: {err.message}") from err
        raise unavailable(err) from err
