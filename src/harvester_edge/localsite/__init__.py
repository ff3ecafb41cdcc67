"""localsite"""
