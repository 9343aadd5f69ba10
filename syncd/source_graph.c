/* source_graph.c - stub until written */
#include "config.h"
extern int source_graph_stub;
int source_graph_stub;
