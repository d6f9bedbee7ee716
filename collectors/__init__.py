"""govsoc collectors: events from traffic, hosts and logs, delivered to the store.

Its interface is these modules (import from them; the rest are their internals):

    collectors.packet   pcap/pcapng files and live interfaces -> network.* events
    collectors.host     processes, sockets, sessions, metrics, file integrity (psutil, /proc)
    collectors.logs     auth.log/secure, syslog, auditd, Windows EVTX -> ECS events
    collectors.shipper  bounded queue -> batches -> store, with the durable disk spool
    collectors.health   what each collector reports (`collect status`, health events)
    collectors.importers  evidence files (pcap, EVTX, Linux logs) -> events, for `govsoc hunt`
                        (the `govsoc.importers` entry point `evidence`)
    collectors.cli      `govsoc collect ...`;  collectors.service: the `govsoc up` agent
    collectors.agent    `govsoc agent`: Agent(cfg).run(stop), agent_id, host_fields
"""

__all__ = ["agent", "cli", "health", "host", "importers", "logs", "packet", "service", "shipper"]
