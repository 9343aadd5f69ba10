/*
 * fuzz_cfg.c - libFuzzer target for the configuration loader
 *
 * Feeds arbitrary bytes as rcptgate.conf to cfg_load() with every real
 * parameter table. Nothing may crash, leak or read out of bounds, whatever
 * the file holds.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "params.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* In the scratch directory (under $TMPDIR, removed at exit), not a fixed name in /tmp. */
    static char *path;
    FILE *fp;
    int fd;

    if (path == NULL) {
        log_init("fuzz_cfg", 0, 0);
        path = fuzz_path("rcptgate.conf");
        /* Mode 0600, as a file holding secrets would be. */
        fuzz_check((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
        close(fd);
    }
    fuzz_check((fp = fopen(path, "w")) != NULL);
    fwrite(data, 1, size, fp);
    fclose(fp);
    cfg_load(path, params_sections_for("rcptgate"));
    return 0;
}
