"""govsoc collectors: events from traffic, hosts and logs, delivered to the store.

    collectors.packet   pcap/pcapng files and live interfaces -> network.* events
    collectors.host     processes, sockets, sessions, metrics, file integrity (psutil, /proc)
    collectors.logs     auth.log/secure, syslog, auditd, Windows EVTX -> ECS events
    collectors.shipper  bounded queue -> batches -> store, with the durable disk spool
    collectors.cli      `govsoc collect ...`;  collectors.service: the `govsoc up` agent
"""
