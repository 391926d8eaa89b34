"""auditfwd: Linux audit logs of KVM/libvirt hypervisors to Elastic Common Schema."""

__version__ = "0.1.0"
