#!/bin/sh
# gen-schema.sh - turn sql/NNN_*.sql migrations into lib/schema.c
#
# Each file becomes one string in schema_migrations[]; migration N (from
# file NNN_) brings the store from user_version N-1 to N.
set -e
echo '/* schema.c - generated from sql/ by sql/gen-schema.sh; do not edit */'
echo '#include <stddef.h>'
echo 'const char *const schema_migrations[] = {'
for f in "$@"; do
    printf '    /* %s */\n' "$(basename "$f")"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$f"
    echo '    ,'
done
echo '    NULL,'
echo '};'
echo "const int schema_version = $#;"
