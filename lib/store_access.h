/* store_access.h - stub until written */
