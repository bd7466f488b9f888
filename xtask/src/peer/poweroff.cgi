#!/bin/sh
# GET /cgi-bin/poweroff on mote's Linux peer: answer 202, then power off
# once the answer is out (busybox httpd turns `Status:` into the status line).
echo "peer: poweroff" > /dev/console
printf 'Status: 202 Accepted\r\nContent-Type: text/plain\r\n\r\npowering off\n'
(sleep 0.2; poweroff -f) < /dev/null > /dev/null 2>&1 &
