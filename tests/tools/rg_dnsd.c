/* rg_dnsd.c - stub until written */
int main(void) { return 1; }
