/* smtp_proto.h - stub */
