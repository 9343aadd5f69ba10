/* smtp_proto.c - stub until written */
#include "config.h"
extern int smtp_proto_stub;
int smtp_proto_stub;
