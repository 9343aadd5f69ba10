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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    FILE *fp;

    if (path[0] == 0) {
        int fd;

        snprintf(path, sizeof(path), "/tmp/rg-fuzz-cfg-%ld", (long) getpid());
        log_init("fuzz_cfg", 0, 0);
        if ((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0)
            close(fd);
    }
    if ((fp = fopen(path, "w")) == NULL)
        return 0;
    fwrite(data, 1, size, fp);
    fclose(fp);
    cfg_load(path, params_sections_for("rcptgate"));
    return 0;
}
