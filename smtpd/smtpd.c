/* smtpd.c - stub until written */
#include "config.h"
int main(void) { return 78; }
