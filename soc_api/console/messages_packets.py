"""The packets view's strings (issue 18), kept apart so that pages built at the same time
merge cleanly; `messages.MESSAGES` includes them. key -> (zh-CN, en)."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "pk.title": ("数据包", "Packets"),
    "pk.loading": ("正在解析数据包……", "Dissecting packets…"),
    "pk.how": ("由 Wireshark 解析器逐层解码；点击序号查看协议树与十六进制",
               "Decoded by Wireshark's dissectors; pick a number for its protocol tree and "
               "bytes"),
    "pk.no": ("序号", "No."),
    "pk.time": ("时间", "Time"),
    "pk.source": ("源", "Source"),
    "pk.destination": ("目的", "Destination"),
    "pk.protocol": ("协议", "Protocol"),
    "pk.length": ("长度", "Length"),
    "pk.info": ("信息", "Info"),
    "pk.none": ("数据包环中没有该告警的数据包", "No packets of this alert in the packet ring"),
    "pk.notes": ("说明", "Notes"),
    "pk.tree": ("协议树", "Protocol tree"),
    "pk.hex": ("十六进制", "Bytes (hex)"),
    "pk.packet": ("数据包 {n}", "Packet {n}"),
    "pk.pick": ("选择一个数据包查看详情", "Pick a packet to see its details"),
    "pk.follow": ("追踪流", "Follow stream"),
    "pk.follow_tcp": ("追踪 TCP 流 {n}", "Follow TCP stream {n}"),
    "pk.follow_http": ("追踪 HTTP 流 {n}", "Follow HTTP stream {n}"),
    "pk.follow_bytes": ("{n} 字节", "{n} bytes"),
    "pk.files": ("提取的文件", "Carved files"),
    "pk.carve": ("从流量中提取文件", "Carve files from the traffic"),
    "pk.carved": ("已提取 {n} 个文件", "{n} files carved"),
    "pk.no_files": ("尚未提取文件", "No files carved yet"),
    "pk.file_name": ("文件名", "File name"),
    "pk.file_size": ("大小（字节）", "Size (bytes)"),
    "pk.file_type": ("类型", "Type"),
    "pk.file_proto": ("协议", "Protocol"),
    "pk.download": ("下载", "Download"),
    "pk.download_how": ("文件可能含恶意代码，仅供离线分析", "The file may be malicious: for "
                        "offline analysis only"),
    "pk.failed": ("数据包解析失败：", "Packet dissection failed: "),
}
