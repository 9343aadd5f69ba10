#!/bin/sh
# gen-schema.sh - turn sql/NNN_*.sql migrations into lib/schema.c
#
#   sh sql/gen-schema.sh sql/001_initial.sql sql/002_....sql > lib/schema.c
#
# Each file becomes one string in schema_migrations[]; migration N (from
# file NNN_) brings the store from user_version N-1 to N, so the files
# must be given in order and numbered 1, 2, 3 ... without a gap: a
# misnumbered file would otherwise silently become another version.
set -e
n=0
for f in "$@"; do
    n=$((n + 1))
    num=$(basename "$f" | sed -n 's/^\([0-9][0-9][0-9]\)_.*\.sql$/\1/p')
    if [ -z "$num" ] || [ "$(expr "$num" + 0)" -ne "$n" ]; then
        echo "gen-schema.sh: $f: expected migration number $n (files NNN_name.sql, in order)" >&2
        exit 1
    fi
done
echo '/* schema.c - generated from sql/ by sql/gen-schema.sh; do not edit */'
echo '#include <stddef.h>'
echo 'extern const char *const schema_migrations[];'
echo 'extern const int schema_version;'
echo 'const char *const schema_migrations[] = {'
for f in "$@"; do
    printf '    /* %s */\n' "$(basename "$f")"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$f"
    echo '    ,'
done
echo '    NULL,'
echo '};'
echo "const int schema_version = $#;"
