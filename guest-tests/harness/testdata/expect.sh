#!/bin/sh
# expect.sh EXIT_CODE REGEX... -- COMMAND...: runs COMMAND, passes iff it exits
# with EXIT_CODE and every extended REGEX matches some line of its output.
want=$1
shift
regexes=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	regexes="$regexes$1
"
	shift
done
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" -eq "$want" ] || { echo "expect.sh: exit status $rc, wanted $want"; exit 1; }
printf '%s' "$regexes" | while IFS= read -r re; do
	printf '%s\n' "$out" | grep -Eq -- "$re" || { echo "expect.sh: no output line matches /$re/"; exit 1; }
done
