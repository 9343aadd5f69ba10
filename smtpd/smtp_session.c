/* smtp_session.c - stub until written */
#include "config.h"
extern int smtp_session_stub;
int smtp_session_stub;
