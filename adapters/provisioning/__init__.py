"""Device provisioning (the IoT Agent provisioning API): service groups and devices.

    fields    the list fields of a group or device (attributes, static attributes, commands, layouts)
    names     entity names from templates (entityNameExp) and ids
    model     IoT Agent JSON in, ServiceGroup / Device values out and back; resolve -> DeviceConfig
    store     the SQL of the provisioning tables (one store module per device feature)
    registry  every group and device in memory, kept coherent across processes (LISTEN/NOTIFY)
    api       the /iot/services and /iot/devices handlers and the provisioning cleanup context

The package re-exports what the rest of the device side uses; ``api`` is imported by name.
"""

from adapters.provisioning.model import Device, ServiceGroup, parse_device, parse_group
from adapters.provisioning.registry import Registry
from adapters.provisioning.store import CHANNEL, ProvisioningStore

__all__ = [
    "CHANNEL",
    "Device",
    "ProvisioningStore",
    "Registry",
    "ServiceGroup",
    "parse_device",
    "parse_group",
]
