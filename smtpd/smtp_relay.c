/* smtp_relay.c - stub until written */
#include "config.h"
extern int smtp_relay_stub;
int smtp_relay_stub;
