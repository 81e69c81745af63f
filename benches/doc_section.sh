# shellcheck shell=bash
# Sourced by the benchmark scripts: puts a generated section into
# docs/benchmarks.md.
#   write_section MARKER HEADING SECTION_FILE DOC
# replaces the text between <!-- MARKER:begin --> and <!-- MARKER:end -->
# (the section file carries both markers), or appends the section under
# "## HEADING" when the doc has no such markers yet.
write_section() {
  local marker=$1 heading=$2 section=$3 doc=$4
  if [ -f "$doc" ] && grep -q "<!-- $marker:begin -->" "$doc"; then
    python3 - "$marker" "$section" "$doc" <<'PY'
import re, sys
marker, section, path = sys.argv[1:4]
new = open(section).read().strip()
doc = open(path).read()
pat = r"<!-- %s:begin -->.*?<!-- %s:end -->" % (re.escape(marker), re.escape(marker))
open(path, "w").write(re.sub(pat, lambda m: new, doc, flags=re.S))
PY
  else
    { echo; echo "## $heading"; echo; cat "$section"; } >> "$doc"
  fi
}
