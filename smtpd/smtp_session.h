/* smtp_session.h - stub */
